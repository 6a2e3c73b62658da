"""Error codes of the Bitrix24 REST API and the OAuth server, with their HTTP statuses.

Sources: the REST docs (the method page of imconnector.send.status.delivery,
``_includes/system-errors.md``, ``limits.md``, ``settings/oauth/auto-renewal.md``), the ``rest`` and
``imconnector`` module source, and the codes the official SDKs handle. Where no source gives the
HTTP status, the comment beside the code says which one the simulator chose; a fault's ``status``
overrides it.
"""

from __future__ import annotations

# code -> (HTTP status, description)
REST_ERRORS: dict[str, tuple[int, str]] = {
    # imconnector.send.status.delivery
    "WRONG_AUTH_TYPE": (403, "Current authorization type is denied for this method"),
    "ERROR_ARGUMENT": (400, "Argument CONNECTOR, LINE or MESSAGES is null or empty"),
    "IMCONNECTOR_NO_CORRECT_PROVIDER": (400, "No provider for the connector"),
    # imconnector module source (input.php routing()): the connector is not in the portal's
    # list of active connectors (undocumented; portal-wide, not per line)
    "IMCONNECTOR_NOT_SPECIFIED_CORRECT_CONNECTOR": (400, "Connector not specified"),
    # imconnector module source: reachable from this method too (undocumented)
    "IMCONNECTOR_COULD_NOT_GET_PROVIDER_OBJECT": (400, "Could not get the provider object"),
    "IMCONNECTOR_NOT_SPECIFIED_CORRECT_COMMAND": (400, "Command not specified"),
    # system errors any method may return
    "INTERNAL_SERVER_ERROR": (500, "Internal server error"),
    "ERROR_UNEXPECTED_ANSWER": (500, "Server returned an unexpected response"),
    "QUERY_LIMIT_EXCEEDED": (503, "Too many requests"),
    "ERROR_BATCH_METHOD_NOT_ALLOWED": (405, "Method is not allowed for batch usage"),
    "ERROR_BATCH_LENGTH_EXCEEDED": (400, "Max batch length exceeded"),
    "NO_AUTH_FOUND": (401, "Wrong authorization data"),
    "INVALID_REQUEST": (400, "Https required."),
    "OVERLOAD_LIMIT": (503, "REST API is blocked due to overload."),
    "ACCESS_DENIED": (403, "REST API is available only on commercial plans."),
    "INVALID_CREDENTIALS": (403, "Invalid request credentials"),
    "ERROR_MANIFEST_IS_NOT_AVAILABLE": (404, "Manifest is not available."),
    # the docs list 403; every OAuth check error comes with 401 (rest/lib/oauthexception.php)
    "insufficient_scope": (
        401,
        "The request requires higher privileges than provided by the access token",
    ),
    "expired_token": (401, "The access token provided has expired."),
    "user_access_error": (401, "The user does not have access to the application."),
    # rest/lib/oauth/auth.php: the portal could not reach its authorization server, and the
    # application is not known to the portal any more
    "CONNECTION_ERROR": (401, "Error connecting to authorization server"),
    "APPLICATION_NOT_FOUND": (401, "Application not found"),
    # the docs' table says 500; the rest module source throws it with 403 (b24pysdk expects 410)
    "PORTAL_DELETED": (403, "Portal was deleted"),
    "OPERATION_TIME_LIMIT": (429, "Method is blocked due to operation time limit."),
    # seen in the official SDKs
    "invalid_token": (401, "unable to get application by token"),  # b24jssdk: 401
    "NOT_INSTALLED": (403, "Application not installed"),  # status undocumented: 403 chosen
    "authorization_error": (401, "Authorization error"),  # status undocumented: 401 chosen
    "PAYMENT_REQUIRED": (402, "Payment required"),  # status undocumented: 402 chosen
    "ERROR_OAUTH": (401, "OAuth error"),  # status undocumented: 401 chosen
}

# Not in the documented tables; what the simulator answers for paths it does not know.
SIM_ERRORS: dict[str, tuple[int, str]] = {
    "ERROR_METHOD_NOT_FOUND": (404, "Method not found!"),
    "PORTAL_NOT_FOUND": (404, "Portal not found (simulator)"),
}

# Token endpoint errors. The docs give no statuses: 400 unless an SDK shows another one.
OAUTH_ERRORS: dict[str, tuple[int, str]] = {
    "invalid_request": (400, "Invalid request"),
    "invalid_client": (401, "Invalid client_id or client_secret"),  # b24phpsdk: 401
    "invalid_scope": (400, "Invalid scope"),
    "invalid_grant": (400, "Invalid grant: refresh token expired, revoked or already used"),
    "PAYMENT_REQUIRED": (400, "Payment required"),
    "wrong_client": (200, "Wrong client"),  # b24pysdk: it comes with HTTP 200
    "insufficient_scope": (400, "Insufficient scope"),
    "NOT_INSTALLED": (400, "Application not installed"),
    "authorization_error": (400, "Authorization error"),
}


def lookup(code: str, oauth: bool = False) -> tuple[int, str]:
    """Status and description for ``code``; unknown codes give 400."""
    table = OAUTH_ERRORS if oauth else REST_ERRORS
    if code in table:
        return table[code]
    if code in SIM_ERRORS:
        return SIM_ERRORS[code]
    if code in REST_ERRORS:
        return REST_ERRORS[code]
    return 400, code
