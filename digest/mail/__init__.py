"""Mail: the MIME message of a rendered digest (message), composing many of them in worker processes (composer),
and handing them over (transport: SMTP or a Maildir)."""
