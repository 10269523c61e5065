"""`notespace adapt`: one command from a trust's notes to a staged, evaluated bundle."""
