#!/usr/bin/env python3
"""Launcher kept for the 2017 command line; the logic lives in ilastikbackend.cli."""

from ilastikbackend.cli import worker_main

if __name__ == "__main__":
    worker_main()
