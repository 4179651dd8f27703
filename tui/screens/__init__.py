"""The app's screens: the browser (main), help, and the error modal."""
