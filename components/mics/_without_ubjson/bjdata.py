"""Stands in for `bjdata` in the node's Crossbar processes (mics.crossbar_run puts this folder first
on their path). The locked bjdata build is for NumPy 1.x: importing it under NumPy 2 prints a long
traceback to stderr in every worker at start, which the worker logs at error level. MICS nodes offer
json, msgpack and cbor only, so Autobahn's optional UBJSON serializer is not wanted: this import
error makes Autobahn leave it out, as it does when bjdata is not installed."""

raise ImportError("UBJSON is not offered by MICS nodes")
