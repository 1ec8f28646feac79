# The API, the dispatcher and the FastAGI server (one image, three commands).
FROM python:3.11-slim
WORKDIR /opt/amivono
# Text-to-speech for voice messages sent as `text`.
RUN apt-get update && apt-get install -y --no-install-recommends espeak-ng \
    && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml README.md ./
COPY service service
COPY asterisk asterisk
COPY dialplan dialplan
RUN pip install --no-cache-dir .
ENV PYTHONDONTWRITEBYTECODE=1
ENTRYPOINT ["amivono"]
CMD ["api"]
