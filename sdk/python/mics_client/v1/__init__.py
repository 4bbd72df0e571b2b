"""Generated protobuf code for protos/mics/v1 (scripts/gen-protos); do not edit."""
