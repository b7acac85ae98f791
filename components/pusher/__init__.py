"""The stock Pusher's executor without duplicate versions (see executor.py)."""
