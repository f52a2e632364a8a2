"""What makes many instances one server: each joins the MCP engine and the shared store and bus, neither knowing
the other. `relay` carries list changes and resource updates; `sessions` shares legacy sessions."""
