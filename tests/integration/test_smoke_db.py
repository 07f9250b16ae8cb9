import pytest
from django.db import connection


@pytest.mark.django_db
def test_app_role_is_not_owner():
    with connection.cursor() as c:
        c.execute("select current_user, current_database()")
        print(c.fetchone())
