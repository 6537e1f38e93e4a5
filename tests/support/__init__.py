"""Test helpers shared by agent, dispatcher and end-to-end tests."""
