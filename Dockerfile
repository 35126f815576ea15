# The ilastik backend services and workers. Build: docker build -t ilastikbackend .
FROM python:3.11-slim

RUN apt-get update && apt-get install -y --no-install-recommends g++ && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
# A portable build (no -march=native): the image may run on other machines than it was built on.
# Editable, because the services run from this folder (the 2017 command lines): the compiled core
# installed into site-packages then serves the package in /app.
RUN pip install --no-cache-dir --no-build-isolation --config-settings=cmake.define.ILASTIKBACKEND_NATIVE=OFF -e .
# Run as an unprivileged user.
RUN useradd --create-home ilastik
USER ilastik
EXPOSE 9000 8888 8080
CMD ["python", "-m", "ilastikbackend", "--help"]
