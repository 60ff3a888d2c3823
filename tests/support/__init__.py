"""What the tests share: the harness (names, commands, schemas), job rows and fault
checks (delivery), hostile messages, generated images, network namespaces, and the
compose-file reader. Tests import helpers from here, never from one another."""
