"""Moving in from other gateways: ``corral import litellm`` turns a LiteLLM proxy config into a
corral config and a report of what was mapped, what changed and what could not be mapped.

``convert_litellm(text, source)`` returns a ``Conversion``: the corral config as plain data
(``config``), its YAML (``yaml_text()``), and the ``Report``. Nothing here resolves an
environment reference: ``os.environ/NAME`` stays a reference in the output.
"""

from corral.migrate.litellm import Conversion, convert_litellm
from corral.migrate.report import Entry, Report, UnreadableSource

__all__ = ["Conversion", "Entry", "Report", "UnreadableSource", "convert_litellm"]
