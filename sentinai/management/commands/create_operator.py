"""An operator's login to the admin (/admin/): a staff superuser (dead-letter replay, re-drive, every page).

manage.py create_operator alice --email alice@example.com          # prints a generated password once
SENTINAI_OPERATOR_PASSWORD=... manage.py create_operator alice      # or sets the one given
manage.py create_operator alice --reset-password                   # a new password for an existing login
"""

import os
import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Create an operator login for the admin (password from SENTINAI_OPERATOR_PASSWORD, or generated)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--email", default="")
        parser.add_argument("--reset-password", action="store_true", help="give an existing login a new password")

    def handle(self, *args, username, email, reset_password, **options):
        users = get_user_model()
        password = os.environ.get("SENTINAI_OPERATOR_PASSWORD") or ""
        generated = not password
        if generated:
            password = secrets.token_urlsafe(18)
        user = users.objects.filter(username=username).first()
        if user is not None and not reset_password:
            raise CommandError(f"operator {username!r} exists; --reset-password gives it a new password")
        if user is None:
            user = users(username=username, email=email)
        try:
            validate_password(password, user)
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from exc
        user.is_staff = user.is_superuser = user.is_active = True
        if email:
            user.email = email
        user.set_password(password)
        user.save()
        self.stdout.write(f"operator {username!r} can log into /admin/")
        if generated:
            self.stdout.write(f"password (shown once): {password}")
