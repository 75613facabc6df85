"""incop's version, on the ground floor so that any module may name it without importing the
package (whose ``__init__`` imports nearly everything)."""
__version__ = "0.1.0"
