"""Run external programs as followers: their processes, their output, and /proc evidence."""
