"""A Bastion App with no tools of its own: a gateway that serves only what [[gateway.servers]] fronts."""

from bastion import App

app = App("front")
