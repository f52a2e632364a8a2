"""The pages a person uses in a browser, signed in through Bastion's own sign-in methods: their connected
applications (pages.py), and, for the subjects [admin] lists, the admin page and its JSON API (admin.py);
sessions.py is how a browser stays signed in to them."""
