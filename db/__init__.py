"""The jinro knowledge DB: SQLAlchemy models, engine set-up, migrations, and the vector index files."""
