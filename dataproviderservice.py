#!/usr/bin/env python3
"""Launcher kept for the 2017 command line; the logic lives in ilastikbackend.cli."""

from ilastikbackend.cli import dataprovider_main

if __name__ == "__main__":
    dataprovider_main()
