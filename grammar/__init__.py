"""The Lark grammars of ofac, shipped as package data (ofac.grammar)."""
