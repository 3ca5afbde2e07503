"""The web console, served by corral on its control plane at /console.

``setup.add_console_routes`` puts it on the app; ``session`` holds sessions and CSRF (the
guessing throttle that sign-in shares with every control-plane route is ``corral.http.guesses``);
``routes`` the page, its files and the console's own calls; ``assets`` the packaged files
under ``static/`` (hand-written ES modules, no build step; ``static/vendor`` is third-party,
see ``scripts/vendor-console``); ``exchange`` runs data-plane handlers on the control plane.
"""
