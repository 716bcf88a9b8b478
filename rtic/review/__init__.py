"""Reviews of firm labels: append-only decisions (store), a labels index for fast lookup (index), the web app (app)."""
