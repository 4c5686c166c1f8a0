"""Reading frames from files, image folders, cameras and stream URLs."""
