"""Small shared security primitives. Imports nothing else of Bastion's."""
