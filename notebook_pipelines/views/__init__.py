"""Views: pictures of a plan (Graphviz), optionally coloured by a trace."""
