"""Who the user is: sign-in methods that finish an authorization transaction (dev login now, upstream
providers with the next issue)."""
