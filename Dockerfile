# The Procfile's processes as a container image, for platforms that build containers (Fly.io,
# Kubernetes, a VPS with compose.yaml). The web process by default; the worker by command:
#   docker run --env-file .env suno-relay python -m relay worker
# Only requirements.txt is installed, exactly as a Heroku-like platform installs it.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PORT=5000

WORKDIR /app
COPY requirements.txt .
RUN pip install -r requirements.txt
COPY . .
RUN useradd --create-home --uid 10001 relay
USER relay

EXPOSE 5000
CMD ["gunicorn", "wsgi:app", "--config", "gunicorn.conf.py"]
