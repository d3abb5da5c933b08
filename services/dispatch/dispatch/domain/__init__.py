"""Dispatch rules as plain functions over plain data: routing, assignment, lifecycle."""
