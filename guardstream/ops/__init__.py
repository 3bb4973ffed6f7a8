"""What the commands do: schemas, tenants, produce, tail, demo and the benchmarks. The CLI
(`guardstream.cli`) only parses arguments and prints."""
