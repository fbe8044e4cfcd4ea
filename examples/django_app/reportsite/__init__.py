"""The example Django project (docs/guide.md, "From Django and Flask")."""
