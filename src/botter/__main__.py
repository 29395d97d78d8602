from botter.cli import app

app()
