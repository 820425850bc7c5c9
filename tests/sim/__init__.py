"""The simulator (`edsync_sim`) tested on its own, in process and over HTTP."""
