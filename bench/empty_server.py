"""A Bastion App with no tools of its own: the gateway benchmark's front, serving only what it fronts."""

from bastion import App

app = App("gateway")
