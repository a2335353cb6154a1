"""The staff admin web app (Starlette, server-rendered Jinja2, no JavaScript)."""
