#!/usr/bin/env python3
"""Launcher kept for the 2017 command line; the logic lives in ilastikbackend.cli."""

from ilastikbackend.cli import gateway_main

if __name__ == "__main__":
    gateway_main()
