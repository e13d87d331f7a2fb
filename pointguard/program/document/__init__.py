"""The program document: its types, its validation, and its versions in force."""
