"""File watchers: kernel inotify, a model of the 2016 fsnotify, and stat polling."""
