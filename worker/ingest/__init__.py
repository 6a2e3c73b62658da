"""What enters through the public tasks: payload validation and confirm_many."""
