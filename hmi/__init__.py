"""The touchscreen process (pygame); talks to the controller only through controller.ipc.messages."""
