"""Interoperability with other gating tools: FlowKit/GatingML, FlowJo workspaces, AnnData."""
