"""The `liver-tumor` command-line tool."""
