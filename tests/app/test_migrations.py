"""The Alembic migrations build exactly the schema the models describe."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from harness import RP_REDIRECT
from harness import Phone
from harness import RelyingParty
from harness import complete_login
from sqlalchemy import select

from idserver import create_app
from idserver.account.models import BrowserSession
from idserver.citizens.service import issue_activation_code
from idserver.citizens.service import register_citizen
from idserver.db import Base
from idserver.db import db
from idserver.db import make_engine
from idserver.db_migrate import alembic_config
from idserver.db_migrate import upgrade
from idserver.oidc.clients import register_client
from idserver.oidc.models import AuthorizationCode
from idserver.oidc.models import Token
from idserver.passkeys.models import Credential
from idserver.phone.authenticator import SoftAuthenticator


def test_upgrade_from_empty_matches_the_models(app_config, tmp_path):
    app = create_app(app_config)
    assert upgrade(app) is not None
    engine = make_engine(app.config["DATABASE_URL"])
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    engine.dispose()
    assert diff == []


def test_upgrade_twice_is_harmless(app_config, tmp_path):
    app = create_app(app_config)
    assert upgrade(app) == upgrade(app)


def test_upgrade_links_existing_sessions_codes_and_tokens_to_their_device(app_config):
    """Grants made before 0006 learn their device from their login, so revoking it ends them."""
    app = create_app(app_config)
    app.config["TESTING"] = True
    upgrade(app)
    with app.app_context():
        citizen = register_citizen(
            given_name="Erika",
            family_name="Mustermann",
            birthdate="1984-08-12",
            street="Kampstraße 12",
            postcode="44137",
            city="Dortmund",
        )
        activation, code = issue_activation_code(citizen.id)
        client, secret = register_client(
            name="Bewohnerparkausweis", redirect_uris=[RP_REDIRECT], scope="openid profile"
        )
    phone = Phone(app.test_client(), SoftAuthenticator())
    assert phone.enrol(activation.id, code).status_code == 201
    complete_login(app.test_client(), RelyingParty(app, client.client_id, secret), phone)
    engine = make_engine(app.config["DATABASE_URL"])
    config = alembic_config(app.config["DATABASE_URL"])
    with engine.begin() as connection:  # back to the schema before the device was recorded
        config.attributes["connection"] = connection
        command.downgrade(config, "0005")
    engine.dispose()
    upgrade(app)
    with app.app_context():
        device = db.session.scalars(select(Credential.id)).one()
        for model in (BrowserSession, AuthorizationCode, Token):
            assert db.session.scalars(select(model.credential_pk)).all() == [device]
        # SQLite copies authorization_codes to change it: the tokens still know their code
        code = db.session.scalars(select(AuthorizationCode.id)).one()
        assert db.session.scalars(select(Token.code_id)).all() == [code]
