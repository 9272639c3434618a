"""Who may invoke a function or publish to a topic on the local cloud.

moto stores a function's resource policy (AddPermission, `AWS::Lambda::Permission`) and a
topic's policy (SetTopicAttributes `Policy`) but never evaluates them, and its own access control
(identity policies only, behind `INITIAL_NO_AUTH_ACTION_COUNT`) is process-wide and knows no
resource policies. So the local cloud evaluates them itself, for two actions only:
`lambda:InvokeFunction` (Invoke, InvokeAsync) and `sns:Publish` (Publish, PublishBatch to a
topic). The rule, as AWS applies it to a principal of the resource's own account:

1. An explicit `Deny` that matches the caller, in the resource policy or in the caller's identity
   policies, refuses.
2. The account's root is allowed (it holds every permission in its own account). A request whose
   access key names no moto IAM user and no assumed role is the account's root: moto's dummy
   credentials (`testing`), the local Lambda runtime, Step Functions' tasks.
3. Otherwise an `Allow` that matches, in the resource policy (the principal named: an IAM user's
   ARN, a role's ARN for its sessions, or `*`) or in the caller's identity policies (inline,
   attached, its groups'), allows.
4. Otherwise refused: HTTP 403, `AccessDeniedException` from Lambda, `AuthorizationError` from
   SNS, as AWS answers, before the function runs or the message is accepted.

Conservative where it cannot know: a statement with `NotAction`, `NotResource`, `NotPrincipal`,
an unknown condition operator or a condition key the local cloud does not supply never allows,
and if it is a `Deny` it refuses. The keys supplied: `aws:PrincipalArn`, `aws:PrincipalAccount`,
and `aws:SecureTransport` (true: loopback stands in for TLS). An account named as principal (its
id or `...:root`) allows only that account's root: for the account's other principals it
delegates to their identity policies, as on AWS. Service principals never match a caller of the
API (a service's own deliveries do not go through these calls locally).

The data exchange platform is a local IAM user, `data-exchange-platform`, in moto's one account;
on AWS it is the platform's own principal, usually of another account, which only the resource
policy can let in.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, NamedTuple
from urllib.parse import unquote, urlparse

__all__ = [
    "ACCOUNT",
    "PLATFORM_ARN",
    "PLATFORM_USER",
    "AccessKey",
    "Caller",
    "Decision",
    "create_platform_identity",
    "decide",
    "install",
    "uninstall",
]

# moto's default account (moto.core.DEFAULT_ACCOUNT_ID), every local resource's account. A
# literal, so that the deploy parameters stay static; create_platform_identity checks it.
ACCOUNT = "123456789012"
PLATFORM_USER = "data-exchange-platform"
PLATFORM_ARN = f"arn:aws:iam::{ACCOUNT}:user/{PLATFORM_USER}"

INVOKE = "lambda:InvokeFunction"
PUBLISH = "sns:Publish"


class AccessKey(NamedTuple):
    """An access key pair: what a principal signs its requests with."""

    key_id: str
    secret: str


@dataclass(frozen=True)
class Caller:
    """The principal a request is signed by."""

    arn: str  # an IAM user's ARN, an assumed-role session's ARN, or the account root's ARN
    account: str
    role_arn: str | None = None  # the role of an assumed-role session

    @property
    def is_root(self) -> bool:
        return self.arn == _root_arn(self.account, _partition(self.arn))


def root(account: str, partition: str = "aws") -> Caller:
    """The account's root user."""
    return Caller(arn=_root_arn(account, partition), account=account)


@dataclass(frozen=True)
class Decision:
    """Allowed, or refused with the reason AWS would give after "because"."""

    allowed: bool
    reason: str = ""


# --- the rule (pure) --------------------------------------------------------------------------


class _Match(Enum):
    APPLIES = "applies"
    NO = "no"
    UNKNOWN = "unknown"  # an element or condition the local cloud cannot evaluate


def decide(
    caller: Caller,
    action: str,
    resource: str,
    resource_policy: Mapping[str, Any] | None,
    identity_policies: Sequence[Mapping[str, Any]] = (),
) -> Decision:
    """May `caller` do `action` on `resource` (an ARN), given the resource's policy (None: it
    has none) and the caller's identity policies? See the module's docstring for the rule."""
    by_resource = [
        (_effect(s), _statement(s, caller, action, resource, resource_based=True))
        for s in _statements(resource_policy)
    ]
    by_identity = [
        (_effect(s), _statement(s, caller, action, resource, resource_based=False))
        for policy in identity_policies
        for s in _statements(policy)
    ]
    for kind, results in (("a resource", by_resource), ("an identity", by_identity)):
        if any(effect != "Allow" and match is not _Match.NO for effect, match in results):
            return Decision(False, f"of an explicit deny in {kind}-based policy")
    if caller.is_root:
        return Decision(True)
    if any(e == "Allow" and m is _Match.APPLIES for e, m in by_resource + by_identity):
        return Decision(True)
    return Decision(False, f"no identity-based or resource-based policy allows the {action} action")


def _statements(policy: Mapping[str, Any] | None) -> list[Mapping[str, Any]]:
    if not policy:
        return []
    statements = policy.get("Statement", [])
    return [statements] if isinstance(statements, Mapping) else list(statements)


def _effect(statement: Mapping[str, Any]) -> str:
    # anything but a well-formed Allow is handled as a Deny: it can only refuse
    return "Allow" if statement.get("Effect") == "Allow" else "Deny"


def _statement(
    statement: Mapping[str, Any],
    caller: Caller,
    action: str,
    resource: str,
    *,
    resource_based: bool,
) -> _Match:
    if any(k in statement for k in ("NotAction", "NotResource", "NotPrincipal")):
        return _Match.UNKNOWN
    if not _any_like(statement.get("Action"), action, ignore_case=True):
        return _Match.NO
    if "Resource" in statement:
        if not _any_like(statement["Resource"], resource, ignore_case=False):
            return _Match.NO
    elif not resource_based:
        return _Match.NO  # an identity statement without Resource is invalid: it grants nothing
    if resource_based:
        if "Principal" not in statement:
            return _Match.UNKNOWN  # invalid in a resource policy
        if not _principal_matches(statement["Principal"], caller):
            return _Match.NO
    return _conditions(statement.get("Condition"), caller)


def _values(element: Any) -> list[str]:
    if element is None:
        return []
    if isinstance(element, str | int | bool):
        return [str(element)]
    return [str(v) for v in element]


def _like(pattern: str, value: str, *, ignore_case: bool) -> bool:
    """IAM's wildcards: `*` any run of characters, `?` any one."""
    if ignore_case:
        pattern, value = pattern.lower(), value.lower()
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, flags=re.DOTALL) is not None


def _any_like(element: Any, value: str, *, ignore_case: bool) -> bool:
    return any(_like(p, value, ignore_case=ignore_case) for p in _values(element))


def _partition(arn: str) -> str:
    parts = arn.split(":")
    return parts[1] if len(parts) > 1 and parts[0] == "arn" else "aws"


def _root_arn(account: str, partition: str) -> str:
    return f"arn:{partition}:iam::{account}:root"


def _principal_matches(principal: Any, caller: Caller) -> bool:
    if principal == "*":
        return True
    if isinstance(principal, str):
        # moto keeps an AWS::Lambda::Permission's Principal as given: an ARN, an account id, or
        # a service name (which it usually wraps itself)
        principal = {"Service" if principal.endswith(".amazonaws.com") else "AWS": principal}
    if not isinstance(principal, Mapping):
        return False
    partition = _partition(caller.arn)
    for named in _values(principal.get("AWS")):
        if named == "*":
            return True
        if re.fullmatch(r"\d{12}", named):
            named = _root_arn(named, partition)
        if named in (caller.arn, caller.role_arn):
            return True
    return False  # Service, Federated, CanonicalUser: never a caller of the API here


_OPERATORS = {
    "StringEquals": (False, False, False),  # (negated, wildcards, ignore case)
    "StringNotEquals": (True, False, False),
    "StringEqualsIgnoreCase": (False, False, True),
    "StringNotEqualsIgnoreCase": (True, False, True),
    "StringLike": (False, True, False),
    "StringNotLike": (True, True, False),
    "ArnEquals": (False, False, False),
    "ArnNotEquals": (True, False, False),
    "ArnLike": (False, True, False),
    "ArnNotLike": (True, True, False),
    "Bool": (False, False, True),
}


def _conditions(block: Any, caller: Caller) -> _Match:
    if not block:
        return _Match.APPLIES
    if not isinstance(block, Mapping):
        return _Match.UNKNOWN
    context = {
        "aws:principalarn": caller.role_arn or caller.arn,
        "aws:principalaccount": caller.account,
        "aws:securetransport": "true",
    }
    for operator, tests in block.items():
        if_exists = operator.endswith("IfExists")
        known = _OPERATORS.get(operator.removesuffix("IfExists"))
        if known is None or not isinstance(tests, Mapping):
            return _Match.UNKNOWN
        negated, wildcards, ignore_case = known
        for key, expected in tests.items():
            actual = context.get(str(key).lower())
            if actual is None:
                if if_exists:
                    continue
                return _Match.UNKNOWN
            if wildcards:
                hit = any(_like(p, actual, ignore_case=ignore_case) for p in _values(expected))
            else:
                fold = str.lower if ignore_case else str
                hit = any(fold(p) == fold(actual) for p in _values(expected))
            if hit == negated:
                return _Match.NO
    return _Match.APPLIES


# --- the platform's identity ------------------------------------------------------------------


def create_platform_identity(iam: Any) -> AccessKey:
    """Make the platform's IAM user (no policy of its own: only the pipeline's resource policies
    can let it in) and an access key for it."""
    user = iam.create_user(UserName=PLATFORM_USER)["User"]
    if user["Arn"] != PLATFORM_ARN:
        raise RuntimeError(
            f"the platform's user is {user['Arn']}, not {PLATFORM_ARN} as the deploy parameters "
            "say: is MOTO_ACCOUNT_ID set?"
        )
    key = iam.create_access_key(UserName=PLATFORM_USER)["AccessKey"]
    return AccessKey(key["AccessKeyId"], key["SecretAccessKey"])


# --- the glue in moto's request handlers (moto 5.2: moto.iam.access_control, the responses) ----

_originals: dict[str, Any] = {}


def _document(policy: Any) -> Mapping[str, Any]:
    """An identity policy as moto's access control collects it, as a policy document."""
    if isinstance(policy, str):
        text = policy
    elif isinstance(policy, Mapping):
        text = policy["policy_document"]
    else:  # a managed policy: its default version
        text = next(v.document for v in policy.versions if v.is_default)
    document = json.loads(text) if isinstance(text, str) else text
    return document if isinstance(document, Mapping) else {}


def _caller(response: Any) -> tuple[Caller, list[Mapping[str, Any]]]:
    """Who signed this request, and their identity policies (moto's own access-key lookup)."""
    from moto.core.exceptions import InvalidClientTokenIdError
    from moto.iam.access_control import (
        CreateAccessKeyFailure,
        IAMRequest,
        create_access_key,
    )
    from moto.utilities.utils import get_partition

    account = response.current_account
    partition = get_partition(response.region)
    try:
        key = create_access_key(
            account_id=account,
            partition=partition,
            access_key_id=response.get_access_key(),
            headers=response.headers,
        )
    except CreateAccessKeyFailure as failure:
        if failure.reason == "InvalidId":
            return root(account, partition), []
        raise InvalidClientTokenIdError() from None
    # a known key must have signed the request with its secret (moto's own SigV4 check)
    query = urlparse(response.uri).query
    path = response.raw_path + (f"?{query}" if query else "")
    IAMRequest(
        account_id=account,
        method=response.method,
        path=path,
        data=response.data,
        body=response.raw_body,
        headers=response.headers,
        action=response._get_action(),
    ).check_signature()
    role_arn = None
    if ":assumed-role/" in key.arn:
        role_arn = f"arn:{partition}:iam::{account}:role/{key.arn.split('/')[1]}"
    return Caller(key.arn, account, role_arn), [_document(p) for p in key.collect_policies()]


def _refusal(caller: Caller, action: str, resource: str, decision: Decision) -> str:
    return (
        f"User: {caller.arn} is not authorized to perform: {action} on resource: {resource} "
        f"because {decision.reason}"
    )


def _check_invoke(response: Any, function_name: str, qualifier: str | None) -> None:
    from moto.core.exceptions import JsonRESTError

    try:
        function = response.backend.get_function(function_name, qualifier)
    except Exception:
        return  # moto answers for an unknown function (404) itself
    statements = list(function.policy.statements)
    policy = {"Statement": statements} if statements else None
    caller, identity = _caller(response)
    resource = function.function_arn
    decision = decide(caller, INVOKE, resource, policy, identity)
    if not decision.allowed:
        error = JsonRESTError("AccessDeniedException", _refusal(caller, INVOKE, resource, decision))
        error.code = 403
        raise error


def _check_publish(response: Any, topic_arn: str | None) -> None:
    from moto.sns.exceptions import SNSException

    if not topic_arn:
        return  # a phone number or an endpoint: no topic policy applies
    try:
        topic = response.backend.get_topic(topic_arn)
    except Exception:
        return  # moto answers NotFound itself
    caller, identity = _caller(response)
    decision = decide(caller, PUBLISH, topic.arn, json.loads(topic.policy), identity)
    if not decision.allowed:
        message = _refusal(caller, "SNS:Publish", topic.arn, decision)
        raise SNSException("AuthorizationError", message)


def _invoke(self: Any) -> Any:
    # the function's name (or ARN) as moto's own handler reads it
    _check_invoke(self, unquote(self.path.rsplit("/", 2)[-2]), self._get_param("qualifier"))
    return _originals["invoke"](self)


def _invoke_async(self: Any) -> Any:
    index = -3 if self.path.endswith("/") else -2
    _check_invoke(self, unquote(self.path.rsplit("/", 3)[index]), None)
    return _originals["invoke_async"](self)


def _publish(self: Any) -> Any:
    if self._get_param("PhoneNumber") is None:
        _check_publish(self, self._get_param("TargetArn") or self._get_param("TopicArn"))
    return _originals["publish"](self)


def _publish_batch(self: Any) -> Any:
    _check_publish(self, self._get_param("TopicArn"))
    return _originals["publish_batch"](self)


def _targets() -> tuple[Any, Any]:
    from moto.awslambda.responses import LambdaResponse
    from moto.sns.responses import SNSResponse

    return LambdaResponse, SNSResponse


def install() -> None:
    """Check every Invoke and Publish (idempotent)."""
    if _originals:
        return
    lambda_response, sns_response = _targets()
    _originals["invoke"], _originals["invoke_async"] = (
        lambda_response.invoke,
        lambda_response.invoke_async,
    )
    _originals["publish"], _originals["publish_batch"] = (
        sns_response.publish,
        sns_response.publish_batch,
    )
    lambda_response.invoke, lambda_response.invoke_async = _invoke, _invoke_async
    sns_response.publish, sns_response.publish_batch = _publish, _publish_batch


def uninstall() -> None:
    """Undo install()."""
    if not _originals:
        return
    lambda_response, sns_response = _targets()
    lambda_response.invoke = _originals.pop("invoke")
    lambda_response.invoke_async = _originals.pop("invoke_async")
    sns_response.publish = _originals.pop("publish")
    sns_response.publish_batch = _originals.pop("publish_batch")
