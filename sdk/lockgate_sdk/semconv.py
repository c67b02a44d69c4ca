"""Every span and attribute name the SDK writes, in one place (OpenTelemetry GenAI semconv v1.41).

The OpenInference keys (`session.id`, `user.id`, `openinference.span.kind`) ride along so Phoenix
and Langfuse read the same spans.
"""

from __future__ import annotations

OPERATION_NAME = "gen_ai.operation.name"
PROVIDER_NAME = "gen_ai.provider.name"
AGENT_NAME = "gen_ai.agent.name"
AGENT_ID = "gen_ai.agent.id"
AGENT_DESCRIPTION = "gen_ai.agent.description"
CONVERSATION_ID = "gen_ai.conversation.id"
TOOL_NAME = "gen_ai.tool.name"
TOOL_CALL_ID = "gen_ai.tool.call.id"
TOOL_TYPE = "gen_ai.tool.type"
TOOL_DESCRIPTION = "gen_ai.tool.description"
TOOL_CALL_ARGUMENTS = "gen_ai.tool.call.arguments"
TOOL_CALL_RESULT = "gen_ai.tool.call.result"
ERROR_TYPE = "error.type"

INVOKE_AGENT = "invoke_agent"
EXECUTE_TOOL = "execute_tool"

SESSION_ID = "session.id"
USER_ID = "user.id"
OPENINFERENCE_KIND = "openinference.span.kind"

# The standard switch for recording message content (and tool arguments/results) on spans.
CAPTURE_CONTENT_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"

SESSION_HEADER = "x-lockgate-session-id"
USER_HEADER = "x-lockgate-user"
APPROVAL_ID_HEADER = "x-lockgate-approval-id"
APPROVAL_STATUS_HEADER = "x-lockgate-approval-status"
