"""Redis state: key names, the script registry and its Lua, the typed store of the flow."""
