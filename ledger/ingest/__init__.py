"""Turning input into rows ready to append, in this process or in a second one (see ``strategy``)."""
