"""The web API's routes, one router per concern."""
