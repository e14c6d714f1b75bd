"""One file per screen. Screens present state from phi3tui.core; they hold no business logic."""
