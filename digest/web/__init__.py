"""`digest serve`: the small web app readers reach from their emails and feeds (app: routes and security;
pages: the HTML it answers with)."""
