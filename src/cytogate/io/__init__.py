"""Layer 1, io: FCS files in and out (reader, writer, human summary). Imports nothing above it."""
