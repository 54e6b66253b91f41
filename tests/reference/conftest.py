# the side script imports quantus, which only the side venv has
collect_ignore = ["quantus_side.py"]
