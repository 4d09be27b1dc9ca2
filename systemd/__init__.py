"""The systemd unit and the example configuration, shipped as package data.

A package (not a bare folder) so that ``importlib.resources`` finds these files
in a source checkout, an editable install and a wheel alike.
"""
