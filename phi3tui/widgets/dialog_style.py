"""THE look of every dialog (a ModalScreen's box: confirm, pickers, forms, the job dialogs, help): one border, one
background, one-row inputs. The App's CSS takes it in; a dialog's own CSS keeps only its size and layout, and puts
`classes="dialog"` on its box ("dialog -warning" for a question that replaces or deletes something)."""

DIALOG_CSS = """
.dialog { border: round $accent; background: $panel; }
.dialog.-warning { border: round $warning; }
.dialog Input { height: 1; border: none; padding: 0 1; }
.dialog Input:focus { background: $boost; border: none; }
"""
