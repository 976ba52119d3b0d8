"""callcenter: telephony backend of the 1090 women's helpline."""

__version__ = "0.1.0"
